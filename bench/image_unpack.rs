//! Unpacks one layer blob (a tar, gzip or zstd file) into a new directory
//! with the image store's unpacker, as `sandbox image import` and pull do
//! (digests computed, caps on), and prints the seconds it took.
//! `bench/image_unpack.sh` compares it with GNU tar on the same layer.
//!
//! cargo run --release --example image_unpack -- LAYER DEST

use std::time::Instant;

use sandbox::image::{Digest, LayerSource, Limits, layer::unpack_layer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(layer), Some(dest)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: image_unpack LAYER DEST");
        std::process::exit(2);
    };
    let dest = std::path::Path::new(dest);
    std::fs::create_dir_all(dest).expect("mkdir DEST");
    let f = std::fs::File::open(layer).expect("open LAYER");
    // The diff_id is not known here: unpack with a wrong one and take the
    // mismatch error, which comes after everything was read and written.
    let src = LayerSource {
        diff_id: Digest::of(b""),
        blob: None,
    };
    let t = Instant::now();
    let r = unpack_layer(
        std::io::BufReader::with_capacity(1 << 20, f),
        &src,
        dest,
        &Limits::default(),
        nix::unistd::geteuid().is_root(),
    );
    let secs = t.elapsed().as_secs_f64();
    match r {
        Err(sandbox::image::ImageError::DigestMismatch { actual, .. }) => {
            println!("{secs:.3} {actual}");
        }
        Ok(_) => println!("{secs:.3}"),
        Err(e) => {
            eprintln!("image_unpack: {e}");
            std::process::exit(1);
        }
    }
}
