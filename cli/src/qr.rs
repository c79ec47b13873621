//! The enrollment QR code, drawn with Unicode half blocks for a terminal.

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;
use zeroize::Zeroizing;

/// Renders `data` (the otpauth URI) for a dark-background terminal: light modules are drawn
/// as blocks, dark ones left as the background, with the quiet zone. `None` if it does not
/// fit in a QR code.
pub fn render(data: &str) -> Option<Zeroizing<String>> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(Zeroizing::new(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_otpauth_uri() {
        let uri = "otpauth://totp/host:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\
                   &issuer=host&algorithm=SHA1&digits=6&period=30";
        let image = render(uri).expect("fits");
        let lines: Vec<&str> = image.lines().collect();
        assert!(lines.len() > 10);
        let width = lines[0].chars().count();
        assert!(width > 20);
        assert!(lines.iter().all(|line| line.chars().count() == width));
        assert!(image.contains('\u{2588}'));
    }

    #[test]
    fn oversized_data_is_skipped() {
        assert!(render(&"x".repeat(8000)).is_none());
    }
}
