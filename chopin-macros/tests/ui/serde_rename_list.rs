use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    #[serde(rename(serialize = "postId"))]
    id: i64,
}

fn main() {}
