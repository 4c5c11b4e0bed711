-- Core tables: customers and sites, device models and devices, technicians, parts and stock, events.

CREATE TABLE fieldops_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE customers (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    contract text NOT NULL DEFAULT 'standard',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    name text NOT NULL,
    address text NOT NULL,
    lat double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    region text NOT NULL DEFAULT 'default'
);
CREATE INDEX ON sites (customer_id);

CREATE TABLE device_models (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL
);

-- metric_index is the slot of the metric in telemetry.vals (0-based here, vals[metric_index + 1] in SQL)
CREATE TABLE model_metrics (
    model_id integer NOT NULL REFERENCES device_models (id) ON DELETE CASCADE,
    metric_index smallint NOT NULL CHECK (metric_index BETWEEN 0 AND 7),
    name text NOT NULL,
    unit text NOT NULL,
    min_value double precision NOT NULL,
    max_value double precision NOT NULL,
    PRIMARY KEY (model_id, metric_index),
    UNIQUE (model_id, name),
    CHECK (min_value < max_value)
);

CREATE TABLE parts (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    unit_cost numeric(12, 2) NOT NULL DEFAULT 0 CHECK (unit_cost >= 0)
);

CREATE TABLE failure_modes (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id integer NOT NULL REFERENCES device_models (id) ON DELETE CASCADE,
    code text NOT NULL,
    name text NOT NULL,
    skill text NOT NULL,
    repair_duration_s integer NOT NULL CHECK (repair_duration_s > 0),
    UNIQUE (model_id, code)
);

CREATE TABLE failure_mode_parts (
    failure_mode_id integer NOT NULL REFERENCES failure_modes (id) ON DELETE CASCADE,
    part_id integer NOT NULL REFERENCES parts (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (failure_mode_id, part_id)
);

CREATE TABLE devices (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial text NOT NULL UNIQUE,
    model_id integer NOT NULL REFERENCES device_models (id),
    site_id integer NOT NULL REFERENCES sites (id),
    installed_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'online', 'offline', 'fault')),
    status_changed_at timestamptz,
    last_seen timestamptz,
    last_seq bigint,
    run_hours double precision NOT NULL DEFAULT 0,
    mqtt_password_hash text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON devices (site_id);
CREATE INDEX ON devices (model_id);

-- Fault and error events reported by devices. handled_at is set by the job logic that consumed it.
CREATE TABLE device_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    code text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'fault')),
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    handled_at timestamptz,
    UNIQUE (device_id, ts, code)
);
CREATE INDEX ON device_events (device_id, ts);
CREATE INDEX device_events_unhandled ON device_events (id) WHERE handled_at IS NULL;

CREATE TABLE technicians (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    skills text[] NOT NULL DEFAULT '{}',
    home_lat double precision NOT NULL CHECK (home_lat BETWEEN -90 AND 90),
    home_lon double precision NOT NULL CHECK (home_lon BETWEEN -180 AND 180),
    region text NOT NULL DEFAULT 'default',
    timezone text NOT NULL DEFAULT 'UTC',
    shift_start time NOT NULL DEFAULT '08:00',
    shift_end time NOT NULL DEFAULT '17:00',
    break_start time,
    break_end time,
    break_duration_s integer NOT NULL DEFAULT 0 CHECK (break_duration_s >= 0),
    active boolean NOT NULL DEFAULT true,
    last_lat double precision,
    last_lon double precision,
    last_position_at timestamptz,
    CHECK (shift_start < shift_end),
    CHECK ((break_start IS NULL) = (break_end IS NULL)),
    CHECK (break_start IS NULL OR break_start < break_end)
);

CREATE TABLE stock_locations (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('warehouse', 'van')),
    name text NOT NULL,
    lat double precision,
    lon double precision,
    technician_id integer UNIQUE REFERENCES technicians (id),
    CHECK ((kind = 'van') = (technician_id IS NOT NULL)),
    CHECK (kind = 'van' OR (lat IS NOT NULL AND lon IS NOT NULL))
);

-- quantity on hand, of which reserved is promised to planned jobs; neither ever negative.
CREATE TABLE stock (
    location_id integer NOT NULL REFERENCES stock_locations (id),
    part_id integer NOT NULL REFERENCES parts (id),
    quantity integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    min_quantity integer NOT NULL DEFAULT 0 CHECK (min_quantity >= 0),
    PRIMARY KEY (location_id, part_id),
    CHECK (reserved <= quantity)
);

-- Append-only domain events; NOTIFY fieldops_events carries the id (see fieldops/events.py).
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    technician_id integer,
    job_id integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON events (created_at);
