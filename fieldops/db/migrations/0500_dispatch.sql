-- Dispatch: committed plans with their stops and unassigned jobs; dispatcher overrides.

CREATE TABLE plans (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL,
    origin timestamptz NOT NULL,
    trigger text NOT NULL,
    solve_time_s double precision NOT NULL CHECK (solve_time_s >= 0),
    objective jsonb NOT NULL DEFAULT '{}'::jsonb,
    active boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX plans_one_active ON plans (active) WHERE active;

CREATE TABLE plan_visits (
    plan_id bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    technician_id integer NOT NULL REFERENCES technicians (id),
    sequence integer NOT NULL CHECK (sequence >= 0),
    kind text NOT NULL CHECK (kind IN ('job', 'pickup')),
    job_id integer NOT NULL REFERENCES jobs (id),
    location_id integer REFERENCES stock_locations (id),  -- pickup place, or where the parts come from
    arrival timestamptz NOT NULL,
    start_at timestamptz NOT NULL,
    departure timestamptz NOT NULL,
    travel_s integer NOT NULL CHECK (travel_s >= 0),
    distance_m integer NOT NULL CHECK (distance_m >= 0),
    PRIMARY KEY (plan_id, technician_id, sequence)
);
CREATE INDEX ON plan_visits (job_id);

CREATE TABLE plan_unassigned (
    plan_id bigint NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    job_id integer NOT NULL REFERENCES jobs (id),
    reason text NOT NULL,
    PRIMARY KEY (plan_id, job_id)
);

-- One standing dispatcher decision per job. technician_id NULL: held out of planning (unassigned).
CREATE TABLE dispatch_overrides (
    job_id integer PRIMARY KEY REFERENCES jobs (id),
    technician_id integer REFERENCES technicians (id),
    position integer CHECK (position >= 0),
    locked_start timestamptz,
    forced boolean NOT NULL DEFAULT false,
    warning text,
    actor text NOT NULL,
    created_at timestamptz NOT NULL
);
