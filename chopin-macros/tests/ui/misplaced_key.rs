use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[projection(column = "id")]
struct Post {
    #[projection(table = "p")]
    id: i64,
}

fn main() {}
