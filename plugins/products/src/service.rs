//! The service functions: what seed 003 decorated with `@cached`, written with the plugin
//! API. Each reads through [`larder_plugin::PluginContext::get_or_load`] under a named
//! policy rule with a key built from its arguments only (`product:7`, never a hash of
//! `self`), so every process and instance computes the same key. Writes commit first and
//! then emit an event: the policy's triggers turn it into exact purges before the write's
//! response leaves.

use std::future::Future;
use std::time::Instant;

use larder_plugin::{Invalidation, LoadedValue, NamedRule, PluginError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ProductsError;
use crate::model::{CatalogPage, CategoryList, Preferences, Product, StaticEntry};
use crate::store::{self, CatalogQuery, ProductPatch};
use crate::{
    PREFERENCES_UPDATED, PRODUCT_MOVED, PRODUCT_UPDATED, RULE_CATALOG, RULE_CATEGORIES,
    RULE_PREFERENCES, RULE_PRODUCT, RULE_STATIC, State,
};

/// A typed error crossing `get_or_load` as text: the loader's failure reaches the caller
/// (and every caller that waited on the same load) as a `PluginError`.
fn to_plugin(e: ProductsError) -> PluginError {
    PluginError::failed(e.to_string())
}

impl State {
    /// Refuses a category slug the catalog does not have, naming `field`.
    pub fn known_category(&self, field: &str, slug: &str) -> Result<(), ProductsError> {
        if self.categories.iter().any(|c| c == slug) {
            return Ok(());
        }
        Err(ProductsError::invalid(
            field,
            format!(
                "no category `{slug}`; one of: {}",
                self.categories.join(", ")
            ),
        ))
    }

    /// `get_or_load` under `rule`, timed as `operation`.
    async fn cached<T, F, Fut>(
        &self,
        operation: &'static str,
        rule: &NamedRule,
        key: String,
        load: F,
    ) -> Result<LoadedValue<T>, ProductsError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ProductsError>> + Send + 'static,
    {
        let started = Instant::now();
        let got = self
            .ctx
            .get_or_load(
                rule,
                key,
                move || async move { load().await.map_err(to_plugin) },
            )
            .await
            .map_err(|e| ProductsError::internal(e.to_string()));
        let hit = got.as_ref().is_ok_and(|v| v.cache_hit);
        self.monitor
            .record(operation, started.elapsed(), got.is_ok(), hit);
        got
    }

    /// `@cached(ttl=300, key_prefix="product")`: one product, key `product:{id}`. Ids past
    /// the catalog's end are answered without a cache entry, so no client can fill the
    /// cache with keys of products that do not exist.
    pub async fn product(&self, id: i64) -> Result<LoadedValue<Product>, ProductsError> {
        let missing = || ProductsError::not_found("id", format!("no product {id}"));
        if id < 1 || id > self.max_product_id {
            return Err(missing());
        }
        let db = self.db.clone();
        let got: LoadedValue<Option<Product>> = self
            .cached(
                "product_lookup",
                &RULE_PRODUCT,
                format!("product:{id}"),
                move || async move { db.run(move |c| store::product(c, id)).await },
            )
            .await?;
        match got.value {
            Some(value) => Ok(LoadedValue {
                value,
                cache_hit: got.cache_hit,
            }),
            None => Err(missing()),
        }
    }

    /// One catalog page, key `catalog:{category}:{sort}:{page}:{page_size}` (defaults filled
    /// in, so `?page=1` and no `page` share it). Pages past the last are refused before the
    /// cache, naming `page`.
    pub async fn catalog(
        &self,
        q: CatalogQuery,
    ) -> Result<LoadedValue<CatalogPage>, ProductsError> {
        if let Some(slug) = &q.category {
            self.known_category("category", slug)?;
        }
        // Checked against this instance's counts (refreshed by its own updates; products
        // move between categories but are never added), so a client cannot mint keys for
        // pages that do not exist.
        let pages = store::page_count(self.total(q.category.as_deref()), q.page_size);
        if q.page > pages {
            return Err(ProductsError::invalid(
                "page",
                format!("page {} is past the last page ({pages})", q.page),
            ));
        }
        let db = self.db.clone();
        let key = q.key();
        self.cached("catalog_page", &RULE_CATALOG, key, move || async move {
            db.run(move |c| store::catalog(c, &q)).await
        })
        .await
    }

    /// Every category with its product count, key `categories`.
    pub async fn categories(&self) -> Result<LoadedValue<CategoryList>, ProductsError> {
        let db = self.db.clone();
        self.cached(
            "categories",
            &RULE_CATEGORIES,
            "categories".into(),
            move || async move { db.run(|c| store::categories(c)).await },
        )
        .await
    }

    /// A user's preferences, key `user:{id}:preferences`. The caller has checked that the
    /// verified principal is this user: the check comes before the cache.
    pub async fn preferences(&self, user: &str) -> Result<LoadedValue<Preferences>, ProductsError> {
        let db = self.db.clone();
        let owned = user.to_owned();
        self.cached(
            "preferences",
            &RULE_PREFERENCES,
            format!("user:{user}:preferences"),
            move || async move { db.run(move |c| store::preferences(c, &owned)).await },
        )
        .await
    }

    /// Seed 003's `get_static_data`: a static entry, key `static:{key}`.
    pub async fn static_data(&self, key: &str) -> Result<LoadedValue<StaticEntry>, ProductsError> {
        let db = self.db.clone();
        let owned = key.to_owned();
        let got: LoadedValue<Option<StaticEntry>> = self
            .cached(
                "static_data",
                &RULE_STATIC,
                format!("static:{key}"),
                move || async move { db.run(move |c| store::static_get(c, &owned)).await },
            )
            .await?;
        match got.value {
            Some(value) => Ok(LoadedValue {
                value,
                cache_hit: got.cache_hit,
            }),
            None => Err(ProductsError::not_found(
                "key",
                format!("no static data under `{key}`"),
            )),
        }
    }

    /// Seed 003's `cache_static_data`: stores the value, then drops the cached copy so the
    /// next read loads it.
    pub async fn put_static(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<StaticEntry, ProductsError> {
        let now = self.now_text();
        let (db, owned, stamp) = (self.db.clone(), key.to_owned(), now.clone());
        db.run(move |c| store::static_put(c, &owned, &value, &stamp))
            .await?;
        self.purge(Invalidation::Keys(vec![format!("static:{key}")]))
            .await?;
        Ok(self.static_data(key).await?.value)
    }

    /// Seed 003's `invalidate_static_data`: removes the entry; whether there was one.
    pub async fn delete_static(&self, key: &str) -> Result<bool, ProductsError> {
        let (db, owned) = (self.db.clone(), key.to_owned());
        let existed = db.run(move |c| store::static_delete(c, &owned)).await?;
        self.purge(Invalidation::Keys(vec![format!("static:{key}")]))
            .await?;
        Ok(existed)
    }

    /// Seed 003's `refresh_static_data`: drops the cached copy and loads the stored one.
    pub async fn refresh_static(&self, key: &str) -> Result<StaticEntry, ProductsError> {
        self.purge(Invalidation::Keys(vec![format!("static:{key}")]))
            .await?;
        Ok(self.static_data(key).await?.value)
    }

    /// Purges this plugin's entries, counting what went.
    pub async fn purge(&self, what: Invalidation) -> Result<u64, ProductsError> {
        let removed = self
            .ctx
            .invalidate(what)
            .await
            .map_err(|e| ProductsError::internal(e.to_string()))?;
        self.purged
            .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
        Ok(removed)
    }

    /// Updates a product, then emits `product.updated` (and `product.moved` when its
    /// category changed) for the policy's triggers.
    pub async fn update_product(
        &self,
        id: i64,
        patch: ProductPatch,
    ) -> Result<Product, ProductsError> {
        if let Some(slug) = &patch.category {
            self.known_category("category", slug)?;
        }
        let started = Instant::now();
        let now = self.now_text();
        let db = self.db.clone();
        let updated = db
            .run(move |c| store::update_product(c, id, &patch, &now))
            .await;
        self.monitor
            .record("product_update", started.elapsed(), updated.is_ok(), false);
        let Some((product, previous)) = updated? else {
            return Err(ProductsError::not_found("id", format!("no product {id}")));
        };
        if product.category != previous {
            self.refresh_counts().await?;
        }
        let fields = json!({
            "product_id": id,
            "category": product.category,
            "previous_category": previous,
        });
        self.ctx.emit(&PRODUCT_UPDATED, fields.clone());
        if product.category != previous {
            self.ctx.emit(&PRODUCT_MOVED, fields);
        }
        Ok(product)
    }

    /// Saves a user's preferences, purges their cached copy, then emits
    /// `preferences.updated` (for an operator's own triggers).
    pub async fn save_preferences(&self, prefs: Preferences) -> Result<Preferences, ProductsError> {
        let started = Instant::now();
        let now = self.now_text();
        let (db, stamp) = (self.db.clone(), now.clone());
        let mut saved = prefs;
        let row = saved.clone();
        let done = db
            .run(move |c| store::save_preferences(c, &row, &stamp))
            .await;
        self.monitor
            .record("preferences_update", started.elapsed(), done.is_ok(), false);
        done?;
        // Purged here rather than by a policy trigger: a user id holds `:` (`jwt:alice`),
        // which a policy template escapes in keys it renders, so only code can name this
        // code-built key exactly.
        self.purge(Invalidation::Keys(vec![format!(
            "user:{}:preferences",
            saved.user_id
        )]))
        .await?;
        self.ctx
            .emit(&PREFERENCES_UPDATED, json!({ "user_id": saved.user_id }));
        saved.stored = true;
        saved.updated_at = Some(now);
        Ok(saved)
    }
}
