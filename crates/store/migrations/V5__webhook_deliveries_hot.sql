-- A delivery row is written twice: claimed, then published. The second write changes only
-- `state` and `expires_at`; with neither indexed it is a heap-only (HOT) update that writes no
-- index entry, and the free room fillfactor leaves on each page keeps the new version on its
-- page. The purge finds old rows by `received_at` (reset when an expired claim is taken over)
-- instead of by `expires_at`.
DROP INDEX IF EXISTS webhook_deliveries_expiry;
CREATE INDEX IF NOT EXISTS webhook_deliveries_received ON webhook_deliveries (received_at);
ALTER TABLE webhook_deliveries SET (fillfactor = 70);
