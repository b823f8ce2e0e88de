//! `baton-server`: lists the templates it would serve. Network serving arrives with the sync
//! layer.

fn main() {
    for template in baton_server::default_templates().iter() {
        println!("{}@{}  {}", template.id, template.version, template.name);
    }
}
