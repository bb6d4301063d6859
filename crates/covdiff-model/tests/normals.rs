//! covdiff's normal stream as the samplers see it (`normals::standard_normal`). A test binary of
//! its own: the stream is one per process, and concurrent tests would draw from it in between.

use covdiff_core::normals::NormalStream;
use covdiff_model::{backends::Cpu, normals};

/// The tests seed the one stream, so they take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn draw(shape: [usize; 2]) -> Vec<f32> {
    normals::standard_normal::<Cpu, 2>(shape, &Default::default()).into_data().to_vec::<f32>().unwrap()
}

/// The tensors hold the stream's numbers, drawn in parallel blocks, in order: the same numbers
/// as one sequential `NormalStream::fill` from the same seed (the stream's own statistics are
/// tested in covdiff-core). Seeding again repeats them; another seed does not.
#[test]
fn tensors_hold_the_seeded_stream_in_order() {
    let _turn = TURN.lock();
    let dev = Default::default();
    normals::seed::<Cpu>(&dev, 5);
    let (a, b) = (draw([3, 70_000]), draw([2, 3]));
    let mut reference = NormalStream::new(5);
    let (mut want_a, mut want_b) = (vec![0.0f32; 210_000], vec![0.0f32; 6]);
    reference.fill(&mut want_a);
    reference.fill(&mut want_b);
    assert_eq!(a, want_a);
    assert_eq!(b, want_b);
    normals::seed::<Cpu>(&dev, 5);
    assert_eq!(draw([3, 70_000]), a, "the same seed gives the same numbers");
    normals::seed::<Cpu>(&dev, 6);
    assert_ne!(draw([3, 70_000]), a);
}

/// `with_stream`: a run with its own stream draws its own numbers and leaves the process's stream
/// where it was, so runs stepped in turn do not disturb each other.
#[test]
fn runs_with_their_own_streams_do_not_interfere() {
    let _turn = TURN.lock();
    let dev = Default::default();
    normals::seed::<Cpu>(&dev, 1);
    let straight = (draw([4, 5]), draw([4, 5]));
    normals::seed::<Cpu>(&dev, 1);
    let mut run = NormalStream::new(9);
    let first = draw([4, 5]);
    let theirs = normals::with_stream(&mut run, || draw([100, 100]));
    let second = draw([4, 5]);
    assert_eq!((first, second), straight, "the process's stream moved during another run");
    let mut want = vec![0.0f32; 10_000];
    NormalStream::new(9).fill(&mut want);
    assert_eq!(theirs, want);
    let mut after = NormalStream::new(9);
    after.reserve(10_000);
    assert_eq!(run, after, "the run's stream did not advance");
}
