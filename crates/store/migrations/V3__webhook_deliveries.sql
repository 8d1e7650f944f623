-- Delivery dedupe with two states (the table itself is in 0001). A row is 'claimed' while one
-- ingest replica publishes the delivery (it expires after a short lease, so a crashed replica
-- does not block a redelivery for long) and 'published' once the broker acknowledged it (it
-- expires after the dedupe window). Rows from before this migration were published.
ALTER TABLE webhook_deliveries
    ADD COLUMN state text NOT NULL DEFAULT 'published' CHECK (state IN ('claimed', 'published')),
    ADD COLUMN claimed_at timestamptz NOT NULL DEFAULT now();
