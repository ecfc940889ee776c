use popoto::Model;

#[derive(Model)]
struct Invite {
    #[popoto(key)]
    email: String,
    #[popoto(expire_at)]
    expires: Option<chrono::DateTime<chrono::Utc>>,
    #[popoto(expire_at)]
    also: Option<chrono::DateTime<chrono::Utc>>,
}

fn main() {}
