-- Ground truth of the device simulator, for evaluation only.
-- Prediction code must never read the `simulator` schema: it holds what a real fleet never tells
-- anyone (when degradation started, which failure mode really failed, whether a repair fixed it).

CREATE SCHEMA simulator;

-- One row per simulated failure: hidden onset of the degradation, the failure, and its repair.
CREATE TABLE simulator.failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    mode text NOT NULL,
    fault_code text NOT NULL,
    onset_at timestamptz NOT NULL,
    failed_at timestamptz NOT NULL,
    repaired_at timestamptz,
    source text NOT NULL CHECK (source IN ('backfill', 'fleet')),
    UNIQUE (device_id, failed_at),
    CHECK (onset_at <= failed_at),
    CHECK (repaired_at IS NULL OR repaired_at >= failed_at)
);
CREATE INDEX ON simulator.failures (failed_at);

-- Every maintenance visit the simulated devices saw, and what it did to them.
CREATE TABLE simulator.repairs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    ts timestamptz NOT NULL,
    job_id integer UNIQUE,
    finding text,
    parts jsonb NOT NULL DEFAULT '{}'::jsonb,
    preventive boolean NOT NULL DEFAULT false,
    restored_mode text,
    source text NOT NULL CHECK (source IN ('backfill', 'fleet')),
    UNIQUE (device_id, ts)
);

-- The live fleet's hidden state per device (health 0..1 per failure mode), refreshed periodically,
-- so that simulated technicians on site find the wear a real one would see.
CREATE TABLE simulator.device_state (
    device_id integer PRIMARY KEY REFERENCES devices (id),
    at timestamptz NOT NULL,
    failed_mode text,
    health jsonb NOT NULL
);
