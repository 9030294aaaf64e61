use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "snake_case")]
struct Post {
    id: i64,
    created_at: String,
}

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all(serialize = "camelCase"))]
struct Comment {
    id: i64,
}

fn main() {}
