use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    created_at: String,
    #[serde(rename = "createdAt")]
    inserted_at: String,
}

fn main() {}
