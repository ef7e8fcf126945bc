//! Sizes for people, in messages, logs and status pages.

/// `bytes` as a short human size (`128 MiB`, `1.5 GiB`, `512 bytes`).
pub fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, scale) in UNITS {
        if bytes >= scale {
            return if bytes.is_multiple_of(scale) {
                format!("{} {unit}", bytes / scale)
            } else {
                format!("{:.1} {unit}", bytes as f64 / scale as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_for_people() {
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(1023 << 20), "1023 MiB");
    }
}
