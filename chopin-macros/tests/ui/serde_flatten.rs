use chopin_core::passthrough::JsonProjection;

#[derive(serde::Serialize)]
struct Audit {
    created_by: String,
}

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    id: i64,
    #[serde(flatten)]
    audit: Audit,
}

fn main() {}
