use sea_orm::entity::prelude::{
    ActiveModelBehavior, DeriveEntityModel, DerivePrimaryKey, DeriveRelation, EnumIter, PrimaryKeyTrait,
};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub environment: String,
    pub username: String,
    pub username_key: String,
    #[sea_orm(column_type = "Text")]
    pub email: String,
    pub email_key: String,
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub master_data: String,
    pub password_hash: String,
    pub trust_level: String,
    pub eid_key: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub privacy_consent: String,
    pub session_epoch: i64,
    pub login_factors: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    pub inactivity_reminded_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
