use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Nothing;

fn main() {}
