use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    #[projection(column = 5)]
    id: i64,
    #[projection]
    title: String,
}

fn main() {}
