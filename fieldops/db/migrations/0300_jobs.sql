-- Service jobs: work orders with their windows, parts, audit trail; SLA terms; stock reservations
-- and movements; feedback and manager tasks; preventive plans.

-- Response (arrival) and resolution deadlines per contract (customers.contract) and priority.
CREATE TABLE sla_terms (
    contract text NOT NULL,
    priority smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    response_s integer NOT NULL CHECK (response_s > 0),
    resolution_s integer NOT NULL,
    PRIMARY KEY (contract, priority),
    CHECK (resolution_s >= response_s)
);
INSERT INTO sla_terms (contract, priority, response_s, resolution_s) VALUES
    ('standard', 1, 4 * 3600, 24 * 3600),
    ('standard', 2, 8 * 3600, 48 * 3600),
    ('standard', 3, 24 * 3600, 72 * 3600),
    ('standard', 4, 72 * 3600, 168 * 3600),
    ('premium', 1, 2 * 3600, 8 * 3600),
    ('premium', 2, 4 * 3600, 24 * 3600),
    ('premium', 3, 8 * 3600, 48 * 3600),
    ('premium', 4, 24 * 3600, 96 * 3600);

CREATE TABLE jobs (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer REFERENCES devices (id),
    site_id integer NOT NULL REFERENCES sites (id),
    type text NOT NULL CHECK (type IN ('repair', 'inspection', 'preventive', 'installation')),
    source text NOT NULL
        CHECK (source IN ('customer', 'fault_event', 'prediction', 'preventive_schedule', 'follow_up')),
    status text NOT NULL DEFAULT 'new' CHECK (status IN
        ('new', 'scheduled', 'dispatched', 'en_route', 'on_site', 'completed', 'unresolved', 'cancelled')),
    failure_mode text,
    priority smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    required_skills text[] NOT NULL DEFAULT '{}',
    estimated_duration_s integer NOT NULL CHECK (estimated_duration_s > 0),
    response_due timestamptz,
    resolution_due timestamptz,
    explanation text NOT NULL DEFAULT '',
    notes text NOT NULL DEFAULT '',
    evidence jsonb NOT NULL DEFAULT '[]'::jsonb,
    parent_job_id integer REFERENCES jobs (id),
    technician_id integer REFERENCES technicians (id),
    planned_arrival timestamptz,
    eta timestamptz,
    at_risk boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    arrived_at timestamptz,
    completed_at timestamptz,
    finding text CHECK (finding IN ('fault_confirmed', 'no_fault_found', 'other')),
    finding_mode text,
    response_breached_at timestamptz,
    resolution_breached_at timestamptz,
    version integer NOT NULL DEFAULT 1 CHECK (version > 0),
    CHECK (status NOT IN ('scheduled', 'dispatched', 'en_route', 'on_site') OR technician_id IS NOT NULL)
);
CREATE INDEX ON jobs (site_id);
CREATE INDEX ON jobs (device_id, created_at);
CREATE INDEX ON jobs (technician_id) WHERE technician_id IS NOT NULL;
CREATE INDEX jobs_open ON jobs (priority, response_due)
    WHERE status IN ('new', 'scheduled', 'dispatched', 'en_route', 'on_site');
-- At most one open job per device and failure mode (no mode counts as one mode) ...
CREATE UNIQUE INDEX jobs_one_open_per_device_mode ON jobs (device_id, coalesce(failure_mode, ''))
    WHERE device_id IS NOT NULL AND status IN ('new', 'scheduled', 'dispatched', 'en_route', 'on_site');
-- ... and per site and failure mode for site-level jobs (alarm storms).
CREATE UNIQUE INDEX jobs_one_open_per_site_mode ON jobs (site_id, coalesce(failure_mode, ''))
    WHERE device_id IS NULL AND status IN ('new', 'scheduled', 'dispatched', 'en_route', 'on_site');

-- Customer time windows (any one of them is acceptable for the arrival).
CREATE TABLE job_windows (
    job_id integer NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    start_at timestamptz NOT NULL,
    end_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, start_at),
    CHECK (end_at > start_at)
);

CREATE TABLE job_parts (
    job_id integer NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    part_id integer NOT NULL REFERENCES parts (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (job_id, part_id)
);

CREATE TABLE job_parts_used (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id integer NOT NULL REFERENCES jobs (id),
    part_id integer NOT NULL REFERENCES parts (id),
    location_id integer REFERENCES stock_locations (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    recorded_at timestamptz NOT NULL
);
CREATE INDEX ON job_parts_used (job_id);

-- The audit trail: every status change (and every merged signal, from_status = to_status).
CREATE TABLE job_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id integer NOT NULL REFERENCES jobs (id),
    from_status text,
    to_status text NOT NULL,
    actor text NOT NULL,
    at timestamptz NOT NULL,
    lat double precision CHECK (lat BETWEEN -90 AND 90),
    lon double precision CHECK (lon BETWEEN -180 AND 180),
    note text,
    technician_id integer REFERENCES technicians (id)
);
CREATE INDEX ON job_events (job_id, at);
CREATE INDEX ON job_events (technician_id, at);

CREATE TABLE sla_breaches (
    job_id integer NOT NULL REFERENCES jobs (id),
    kind text NOT NULL CHECK (kind IN ('response', 'resolution')),
    due_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, kind)
);

-- Parts promised to a job at a location; the sum per (location, part) equals stock.reserved.
CREATE TABLE stock_reservations (
    job_id integer NOT NULL REFERENCES jobs (id),
    location_id integer NOT NULL,
    part_id integer NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, location_id, part_id),
    FOREIGN KEY (location_id, part_id) REFERENCES stock (location_id, part_id)
);

-- Every stock change: receipts, transfers, consumption (from NULL = received, to NULL = consumed).
CREATE TABLE stock_movements (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    part_id integer NOT NULL REFERENCES parts (id),
    from_location_id integer REFERENCES stock_locations (id),
    to_location_id integer REFERENCES stock_locations (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    job_id integer REFERENCES jobs (id),
    actor text NOT NULL,
    at timestamptz NOT NULL,
    CHECK (from_location_id IS NOT NULL OR to_location_id IS NOT NULL)
);

CREATE TABLE feedback (
    job_id integer PRIMARY KEY REFERENCES jobs (id),
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

CREATE TABLE manager_tasks (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id integer REFERENCES jobs (id),
    kind text NOT NULL,
    description text NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at timestamptz NOT NULL,
    closed_at timestamptz
);
CREATE INDEX manager_tasks_open ON manager_tasks (created_at) WHERE status = 'open';

-- Preventive maintenance per device model: every N days and/or every N run hours.
CREATE TABLE preventive_plans (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id integer NOT NULL REFERENCES device_models (id) ON DELETE CASCADE,
    code text NOT NULL,
    name text NOT NULL,
    every_days integer CHECK (every_days > 0),
    every_run_hours double precision CHECK (every_run_hours > 0),
    lead_days integer NOT NULL DEFAULT 7 CHECK (lead_days >= 0),
    skill text NOT NULL,
    duration_s integer NOT NULL CHECK (duration_s > 0),
    priority smallint NOT NULL DEFAULT 4 CHECK (priority BETWEEN 1 AND 4),
    UNIQUE (model_id, code),
    CHECK (every_days IS NOT NULL OR every_run_hours IS NOT NULL)
);

-- When each plan last opened a job for each device, and the run hours then.
CREATE TABLE preventive_state (
    plan_id integer NOT NULL REFERENCES preventive_plans (id) ON DELETE CASCADE,
    device_id integer NOT NULL REFERENCES devices (id),
    due_at timestamptz NOT NULL,
    run_hours double precision NOT NULL,
    job_id integer NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (plan_id, device_id)
);
