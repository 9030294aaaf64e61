use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
struct Post {
    id: i64,
    created_at: String,
}

fn main() {}
