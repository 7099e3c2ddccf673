//! User (client) and barber profiles: read and update.

use larder_plugin::JsonBody;
use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::Path;

use super::{BarberId, PathId, Reply, UserId};
use crate::State;
use crate::events;
use crate::model::{BarberProfile, BarberUpdate, UserProfile, UserUpdate};
use crate::store;

/// Profile routes.
pub struct ProfilesApi(pub Arc<State>);

#[OpenApi(prefix_path = "/api/v2")]
impl ProfilesApi {
    /// A user's profile
    ///
    /// Contact details, preferences and visit statistics of a client.
    #[oai(
        path = "/users/:user_id",
        method = "get",
        operation_id = "get_user_profile"
    )]
    async fn get_user_profile(
        &self,
        /// The user.
        user_id: Path<PathId<UserId>>,
    ) -> Reply<UserProfile> {
        let (id, today) = (user_id.0.0, self.0.clock.today());
        self.0
            .db
            .read(move |c| store::user_profile(c, id, today))
            .await
            .into()
    }

    /// Update a user's profile
    ///
    /// Absent fields stay as they are. Emits `profile.updated` (`kind: user`) after the change
    /// is stored, which purges that profile only.
    #[oai(
        path = "/users/:user_id",
        method = "put",
        operation_id = "update_user_profile"
    )]
    async fn update_user_profile(
        &self,
        /// The user.
        user_id: Path<PathId<UserId>>,
        body: JsonBody<UserUpdate>,
    ) -> Reply<UserProfile> {
        let (id, today) = (user_id.0.0, self.0.clock.today());
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| {
                store::update_user(c, id, &body.0, &stamp)?;
                store::user_profile(c, id, today)
            })
            .await;
        if result.is_ok() {
            events::profile_updated(&self.0.ctx, "user", id);
        }
        result.into()
    }

    /// A barber's profile
    ///
    /// Contact details, biography, weekly working hours and upcoming time off.
    #[oai(
        path = "/barbers/:barber_id",
        method = "get",
        operation_id = "get_barber_profile"
    )]
    async fn get_barber_profile(
        &self,
        /// The barber.
        barber_id: Path<PathId<BarberId>>,
    ) -> Reply<BarberProfile> {
        let (id, today) = (barber_id.0.0, self.0.clock.today());
        self.0
            .db
            .read(move |c| store::barber_profile(c, id, today))
            .await
            .into()
    }

    /// Update a barber's profile
    ///
    /// Name, phone, biography, specialties; absent fields stay as they are. Emits
    /// `profile.updated` (`kind: barber`) after the change is stored, which purges that
    /// profile and the barber list.
    #[oai(
        path = "/barbers/:barber_id",
        method = "put",
        operation_id = "update_barber_profile"
    )]
    async fn update_barber_profile(
        &self,
        /// The barber.
        barber_id: Path<PathId<BarberId>>,
        body: JsonBody<BarberUpdate>,
    ) -> Reply<BarberProfile> {
        let (id, today) = (barber_id.0.0, self.0.clock.today());
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| {
                store::update_barber(c, id, &body.0, &stamp)?;
                store::barber_profile(c, id, today)
            })
            .await;
        if result.is_ok() {
            events::profile_updated(&self.0.ctx, "barber", id);
        }
        result.into()
    }
}
