-- Paper venue (appliance/venues/paper): its exchange-side order state lives in paper_orders.
--
-- fill_count: number of fills the paper venue has reported for the order, so that fill ids
-- "{venue_order_id}-{k}" stay sequential and deterministic across restarts.
-- status values used by the paper venue: new (accepted, has not met an eligible bar yet),
-- open (resting), filled, canceled.

ALTER TABLE paper_orders ADD COLUMN fill_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX paper_orders_status ON paper_orders(status);
