-- Re-plan previews kept server-side, so "apply" commits exactly the plan the dispatcher saw.
-- fingerprint: what the plan was solved against (active plan, open job versions, overrides);
-- apply refuses when the current fingerprint differs. plan: the solution and what committing it needs.

CREATE TABLE plan_previews (
    id text PRIMARY KEY,
    created_by integer NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    fingerprint text NOT NULL,
    plan jsonb NOT NULL,
    applied_plan_id integer
);
CREATE INDEX ON plan_previews (created_at);
