fn main() {
    println!("modelship-operator: not yet implemented");
}
