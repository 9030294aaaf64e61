use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    id: i64,
    #[projection(sqlite = "json(iif(published, 'true', 'false'))")]
    published: bool,
}

fn main() {}
