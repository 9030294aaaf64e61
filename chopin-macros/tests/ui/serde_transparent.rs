use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase", transparent)]
struct PostId {
    id: i64,
}

fn main() {}
