-- Prediction: the model registry and the scorer's predictions.

CREATE TABLE model_registry (
    version integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    estimator text NOT NULL,
    params jsonb NOT NULL DEFAULT '{}'::jsonb,
    train_start timestamptz,
    train_end timestamptz,
    horizon_h double precision NOT NULL CHECK (horizon_h > 0),
    metrics jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- metrics of the model that was active when this one was trained, on this one's hold-out
    compared_with integer REFERENCES model_registry (version),
    compared_metrics jsonb,
    artifact bytea NOT NULL,
    sha256 text NOT NULL CHECK (length(sha256) = 64),
    active boolean NOT NULL DEFAULT false,
    promoted_at timestamptz
);
CREATE UNIQUE INDEX model_registry_one_active ON model_registry (active) WHERE active;

CREATE TABLE predictions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id integer NOT NULL REFERENCES devices (id),
    scored_at timestamptz NOT NULL,
    model_version integer NOT NULL REFERENCES model_registry (version),
    p_fail double precision NOT NULL CHECK (p_fail BETWEEN 0 AND 1),
    rul_h double precision NOT NULL CHECK (rul_h >= 0),
    failure_mode text NOT NULL DEFAULT '',
    explanation text NOT NULL DEFAULT '',
    job_id integer
);
CREATE INDEX ON predictions (device_id, scored_at DESC);
CREATE INDEX ON predictions (scored_at);
