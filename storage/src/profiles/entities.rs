//! The profiles context's tables.

pub(super) mod profile {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "profiles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub display_name: Option<String>,
        pub bio: Option<String>,
        pub avatar: Option<String>,
        pub timezone: Option<String>,
        pub country: Option<String>,
        pub phone: Option<String>,
        pub phone_verified: bool,
        pub visibility: String,
        /// A JSON object.
        pub attributes: String,
        pub deletion_due_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(super) mod settings {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// A JSON object.
        pub settings: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(super) mod reservation {
    use sea_orm::entity::prelude::*;

    /// A username given up by a rename, held for its former owner until `until`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "username_reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub username_normalized: String,
        pub user_id: Uuid,
        pub until: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(super) mod phone_code {
    use sea_orm::entity::prelude::*;

    /// A phone number waiting for its SMS code: the code's keyed hash, never the code.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "phone_verifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub phone: String,
        pub code_hash: String,
        pub expires_at: DateTimeUtc,
        pub attempts: i32,
        pub sent_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
