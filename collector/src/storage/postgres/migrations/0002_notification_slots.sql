-- The notification log, one row per receiver, alert group and group-interval slot
-- (0001's one row per receiver and group was never used): the primary key lets one
-- notice per slot exist across the cluster; `epoch` is the evaluator lease epoch it
-- was claimed under; `delivered` turns true once the receiver answered 2xx: the next
-- slot's notice is judged against the last delivered one, so a notice claimed by an
-- evaluator that died before it got through is sent in the next slot.
DROP TABLE IF EXISTS calm_notification_log;
CREATE TABLE calm_notification_log (
    receiver   TEXT     NOT NULL,
    group_key  TEXT     NOT NULL,
    slot       BIGINT   NOT NULL,
    epoch      BIGINT   NOT NULL,
    node       TEXT     NOT NULL,
    sent_at_ms BIGINT   NOT NULL,
    firing     BIGINT[] NOT NULL,
    resolved   BIGINT[] NOT NULL,
    delivered  BOOLEAN  NOT NULL DEFAULT false,
    PRIMARY KEY (receiver, group_key, slot)
);
