// The migrations are embedded in the binary (`sqlx::migrate!`): rebuild when any of them changes
// or a new one is added.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
