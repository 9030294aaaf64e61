use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    id: i64,
    #[serde(skip)]
    #[projection(column = "cache")]
    cache: String,
}

fn main() {}
