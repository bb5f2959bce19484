-- Webhook deliveries already received, by the sender's delivery id, so that a retried delivery
-- starts no second run. Rows older than the dedupe window are deleted as new ones arrive.
CREATE TABLE webhook_deliveries (
    hook        TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    run_id      TEXT,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (hook, delivery_id)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
