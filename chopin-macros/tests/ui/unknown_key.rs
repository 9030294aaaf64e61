use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[projection(tabel = "p")]
struct Post {
    id: i64,
    #[projection(colum = "post_title")]
    title: String,
}

fn main() {}
