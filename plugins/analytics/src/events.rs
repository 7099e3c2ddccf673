//! The events the plugin emits after each committed write. Policy `triggers:` turn them into
//! exact invalidations (see `policies/analytics.yaml`); every field a trigger needs is here.

use larder_plugin::{EventKind, EventSpec, PluginContext};
use serde_json::json;

use crate::store::{CreatedOrder, Resolved};

/// An order was recorded.
pub const ORDER_CREATED: EventKind = EventKind::new(
    "order.created",
    &[
        "tenant",
        "order_id",
        "customer_id",
        "order_date",
        "region",
        "categories",
    ],
    "An order was recorded for `tenant` on `order_date` (today): revenue ranges holding \
             that day, product performance, segments, cohorts, funnels, business and stream \
             metrics of the tenant, and that customer's details, recommendations and lists.",
);
/// An order moved a customer to another segment.
pub const CUSTOMER_SEGMENT_CHANGED: EventKind = EventKind::new(
    "customer.segment_changed",
    &["tenant", "customer_id", "from", "to"],
    "An order moved a customer from segment `from` to `to`: segment-filtered funnels \
             of both changed.",
);
/// A fraud alert was resolved (or closed as a false positive).
pub const FRAUD_ALERT_RESOLVED: EventKind = EventKind::new(
    "fraud_alert.resolved",
    &["tenant", "alert_id", "customer_id"],
    "A fraud alert of `tenant` was closed: its alert lists and dashboard changed.",
);
/// A customer's risk level changed (their last open alert was closed, ...).
pub const CUSTOMER_RISK_CHANGED: EventKind = EventKind::new(
    "customer.risk_changed",
    &["tenant", "customer_id", "risk_level"],
    "A customer's risk level changed: their details and the customer lists changed.",
);

/// Declarations for [`larder_plugin::Plugin::events`].
pub fn specs() -> Vec<EventSpec> {
    vec![
        ORDER_CREATED.spec().emitted_by(&["create_order"]),
        CUSTOMER_SEGMENT_CHANGED
            .spec()
            .emitted_by(&["create_order"]),
        FRAUD_ALERT_RESOLVED
            .spec()
            .emitted_by(&["resolve_fraud_alert"]),
        CUSTOMER_RISK_CHANGED
            .spec()
            .emitted_by(&["resolve_fraud_alert"]),
    ]
}

/// Emits `order.created`.
pub fn order_created(ctx: &PluginContext, tenant: &str, order: &CreatedOrder, date: &str) {
    ctx.emit(
        &ORDER_CREATED,
        json!({
            "tenant": tenant,
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "order_date": date,
            "region": order.region,
            "categories": order.categories,
        }),
    );
    let (from, to) = &order.segments;
    if from != to {
        ctx.emit(
            &CUSTOMER_SEGMENT_CHANGED,
            json!({ "tenant": tenant, "customer_id": order.customer_id, "from": from, "to": to }),
        );
    }
}

/// Emits `fraud_alert.resolved`, and `customer.risk_changed` when it moved the customer.
pub fn alert_resolved(ctx: &PluginContext, tenant: &str, alert_id: i64, r: &Resolved) {
    ctx.emit(
        &FRAUD_ALERT_RESOLVED,
        json!({ "tenant": tenant, "alert_id": alert_id, "customer_id": r.customer_id }),
    );
    if r.risk_changed {
        ctx.emit(
            &CUSTOMER_RISK_CHANGED,
            json!({
                "tenant": tenant,
                "customer_id": r.customer_id,
                "risk_level": r.body["customer_risk_level"],
            }),
        );
    }
}
