-- Balances per venue account: the same asset can be held on several venues.
-- Existing rows belong to the paper venue, named "paper" by default (lyrad renames them at start
-- if [paper] venue is configured otherwise).

CREATE TABLE balances_by_venue (
    venue  TEXT NOT NULL,
    asset  TEXT NOT NULL,
    total  TEXT NOT NULL,
    PRIMARY KEY (venue, asset)
);
INSERT INTO balances_by_venue(venue, asset, total) SELECT 'paper', asset, total FROM balances;
DROP TABLE balances;
ALTER TABLE balances_by_venue RENAME TO balances;

CREATE TABLE starting_balances_by_venue (
    venue  TEXT NOT NULL,
    asset  TEXT NOT NULL,
    total  TEXT NOT NULL,
    PRIMARY KEY (venue, asset)
);
INSERT INTO starting_balances_by_venue(venue, asset, total) SELECT 'paper', asset, total FROM starting_balances;
DROP TABLE starting_balances;
ALTER TABLE starting_balances_by_venue RENAME TO starting_balances;
