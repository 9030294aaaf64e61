use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Post {
    id: i64,
    #[projection(postgres = "initcap(title)")]
    title: String,
}

fn main() {}
