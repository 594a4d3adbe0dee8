mod common;

#[test]
fn every_kind_round_trips_through_the_cli() {
    let cs = common::Cs::new();
    let tar = common::tar::every_kind();
    let id = cs.import(&tar, &[]);
    let out = cs.ok_bytes(&["diff", "-u", &id]);
    assert_eq!(common::sha256(&out), common::sha256(&tar));
}
