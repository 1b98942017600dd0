//! Prints the AuthStack CustomResourceDefinition as YAML.
//!
//! `cargo run -q -p authstack-operator --bin crdgen > crds/authstack.yaml`

fn main() -> anyhow::Result<()> {
    print!("{}", authstack_operator::crd::crd_yaml()?);
    Ok(())
}
