use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[projection(table = "")]
struct Post {
    #[projection(column = "")]
    id: i64,
    #[projection(sql = "  ")]
    title: String,
    #[projection(postgres = "", sqlite = "upper(body)")]
    body: String,
    #[serde(rename = "")]
    slug: String,
}

fn main() {}
