//! The two writes: each checks everything, commits in one transaction, then emits the
//! event whose triggers purge exactly what it changed. A refused write changes and purges
//! nothing.

use larder_plugin::JsonBody;
use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::{Enum, Object, OpenApi};

use super::schema::{OrderReceipt, ResolvedAlert};
use super::{Created, Reply, created, reply, tenant_of};
use crate::State;
use crate::error::AnalyticsError;
use crate::events;
use crate::store::{self, NewLine};

/// One line of a new order.
#[derive(Object, Debug, Clone)]
// Only the document's example is ever written out: it shows the fields it sets.
#[oai(skip_serializing_if_is_none)]
pub struct OrderLine {
    /// A product of the caller's tenant.
    pub product_id: i64,
    /// Units, 1–1000.
    pub quantity: i64,
    /// Price per unit; the product's price when absent.
    pub unit_price: Option<f64>,
}

/// A new order. It is recorded today (the server's clock).
#[derive(Object, Debug, Clone)]
#[oai(example, skip_serializing_if_is_none)]
pub struct NewOrder {
    /// A customer of the caller's tenant (required; optional in the schema so a missing one
    /// is answered with its name).
    pub customer_id: Option<i64>,
    /// 1–100 lines.
    pub items: Vec<OrderLine>,
    /// Region code; the customer's region when absent.
    pub region: Option<String>,
}

impl poem_openapi::types::Example for NewOrder {
    fn example() -> Self {
        NewOrder {
            customer_id: Some(1),
            items: vec![OrderLine {
                product_id: 1,
                quantity: 2,
                unit_price: None,
            }],
            region: None,
        }
    }
}

/// How an alert is closed.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum Resolution {
    /// It was fraud; handled.
    ConfirmedFraud,
    /// It was not fraud.
    FalsePositive,
    /// Handled otherwise.
    Resolved,
}

/// Closing a fraud alert.
#[derive(Object, Debug, Clone)]
#[oai(example, skip_serializing_if_is_none)]
pub struct ResolveAlert {
    /// How it was closed.
    pub resolution: Resolution,
    /// A note for the record (at most 2000 characters).
    #[oai(validator(max_length = 2000))]
    pub note: Option<String>,
}

impl poem_openapi::types::Example for ResolveAlert {
    fn example() -> Self {
        ResolveAlert {
            resolution: Resolution::FalsePositive,
            note: Some("Customer confirmed the order by phone.".into()),
        }
    }
}

/// The writes.
pub struct WritesApi(pub Arc<State>);

fn check_lines(order: &NewOrder) -> Result<Vec<NewLine>, AnalyticsError> {
    if order.items.is_empty() {
        return Err(AnalyticsError::invalid(
            "items",
            "empty_order",
            "an order needs at least one item",
        ));
    }
    if order.items.len() > 100 {
        return Err(AnalyticsError::invalid(
            "items",
            "too_many_items",
            "an order has at most 100 items",
        ));
    }
    order
        .items
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if !(1..=1000).contains(&l.quantity) {
                return Err(AnalyticsError::invalid(
                    &format!("items[{i}].quantity"),
                    "invalid_quantity",
                    format!("quantity must be between 1 and 1000; got {}", l.quantity),
                ));
            }
            let price = match l.unit_price {
                None => None,
                Some(p) if p.is_finite() && (0.0..=1_000_000.0).contains(&p) => {
                    Some((p * 100.0).round() as i64)
                }
                Some(p) => {
                    return Err(AnalyticsError::invalid(
                        &format!("items[{i}].unit_price"),
                        "invalid_price",
                        format!("unit_price must be between 0 and 1000000; got {p}"),
                    ));
                }
            };
            Ok(NewLine {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price_cents: price,
            })
        })
        .collect()
}

#[OpenApi]
impl WritesApi {
    /// Records an order for a customer of the caller's tenant, dated today. Purges the
    /// revenue ranges holding today, product performance, segments, cohorts, funnels and
    /// business figures of the tenant, and that customer's entries.
    #[oai(
        path = "/api/v1/orders",
        method = "post",
        operation_id = "create_order"
    )]
    async fn create_order(
        &self,
        req: &poem::Request,
        body: JsonBody<NewOrder>,
    ) -> Created<OrderReceipt> {
        let run = async {
            let (tenant, slug) = tenant_of(&self.0, req)?;
            let order = body.0;
            let lines = check_lines(&order)?;
            if let Some(r) = order.region.as_deref() {
                self.0.reference.region(Some(r))?;
            }
            let today = self.0.today();
            let created_at = self.0.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let state = self.0.clone();
            let customer = order.customer_id.ok_or_else(|| {
                AnalyticsError::invalid("customer_id", "missing", "`customer_id` is required")
            })?;
            let region = order.region.clone();
            let made = self
                .0
                .db
                .write(move |c| {
                    store::create_order(
                        c,
                        &state.reference,
                        tenant,
                        customer,
                        region.as_deref(),
                        &lines,
                        today,
                        &created_at,
                    )
                })
                .await?;
            events::order_created(&self.0.ctx, &slug, &made, &today.to_string());
            Ok(made.body)
        };
        created(run.await)
    }

    /// Closes an open fraud alert of the caller's tenant. Purges the tenant's alert lists
    /// and dashboard, and the customer's entries when their risk level changes.
    #[oai(
        path = "/api/v1/fraud/alerts/:alert_id/resolve",
        method = "post",
        operation_id = "resolve_fraud_alert"
    )]
    async fn resolve(
        &self,
        req: &poem::Request,
        /// The alert, by id within the tenant.
        #[oai(example = "example_alert_id")]
        alert_id: Path<i64>,
        body: JsonBody<ResolveAlert>,
    ) -> Reply<ResolvedAlert> {
        let run = async {
            let (tenant, slug) = tenant_of(&self.0, req)?;
            let id = alert_id.0;
            let resolution = match body.0.resolution {
                Resolution::ConfirmedFraud => "confirmed_fraud",
                Resolution::FalsePositive => "false_positive",
                Resolution::Resolved => "resolved",
            };
            let note = body.0.note.clone();
            let at = self.0.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let done = self
                .0
                .db
                .write(move |c| {
                    store::resolve_alert(c, tenant, id, resolution, note.as_deref(), &at)
                })
                .await?;
            events::alert_resolved(&self.0.ctx, &slug, id, &done);
            Ok(done.body)
        };
        reply(run.await)
    }
}

fn example_alert_id() -> i64 {
    1
}
