use chopin_core::passthrough::JsonProjection;

#[derive(JsonProjection)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
