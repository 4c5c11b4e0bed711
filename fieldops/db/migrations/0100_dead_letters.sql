-- Ingest: messages (or single readings) the consumer could not accept, with the reason.
-- kind 'message': the whole MQTT message was refused; 'reading': one reading of an accepted message.
CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('message', 'reading')),
    topic text NOT NULL,
    reason text NOT NULL CHECK (reason <> ''),
    payload bytea NOT NULL,
    payload_size_bytes integer NOT NULL CHECK (payload_size_bytes >= 0)
);
CREATE INDEX ON dead_letters (received_at);
