use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[projection(table = "blog post")]
struct Post {
    id: i64,
}

fn main() {}
