use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    #[projection(column = "post_id")]
    #[projection(column = "id")]
    id: i64,
}

fn main() {}
