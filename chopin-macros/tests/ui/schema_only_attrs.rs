use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Post {
    #[schema(rename = "postId")]
    id: i64,
    #[schema(example = "Hello", ignore)]
    title: String,
}

fn main() {}
