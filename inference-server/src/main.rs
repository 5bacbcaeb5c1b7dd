fn main() {
    println!("modelship-server: not yet implemented");
}
