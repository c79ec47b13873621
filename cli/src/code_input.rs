//! Codes that are not on the command line (where `ps` shows them): `-` as CODE, or `verify`
//! without CODE. On a terminal the code is typed at a prompt without echo, as getpass(3)
//! reads a password; otherwise it is the first line of standard input.
//!
//! At most [`MAX_CODE_LINE`] bytes are read, one at a time (nothing past the line is
//! consumed, and nothing is left in a buffer that is not wiped), into zeroizing memory. The
//! code is validated afterwards like one given as an argument; no message repeats it.

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use pam_totp_proto::{ApiError, SecretString};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use zeroize::Zeroizing;

/// Longest line taken as a code, without its line end. Codes are at most 8 digits: this only
/// bounds what is read.
pub const MAX_CODE_LINE: usize = 256;

/// The prompt on a terminal (the PAM module's default prompt).
pub const PROMPT: &str = "Verification code: ";

/// The code from standard input: typed at a prompt without echo when standard input is a
/// terminal, else its first line.
pub fn read_code() -> Result<SecretString, ApiError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        prompt_on_terminal()
    } else {
        read_code_line(&mut FdReader(stdin.as_fd()))
    }
}

/// Reads one line: up to `\n` (taken off, with a `\r` before it) or the end of the input.
/// Refuses an empty line, no input at all, and a line longer than [`MAX_CODE_LINE`] bytes
/// (without reading past that).
pub fn read_code_line(input: &mut impl Read) -> Result<SecretString, ApiError> {
    // Room for the longest line and a `\r`: the buffer never grows, so never leaves an
    // unwiped copy behind.
    let mut line: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(MAX_CODE_LINE + 1));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match input.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() > MAX_CODE_LINE => return Err(too_long()),
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(ApiError::internal(format!(
                    "cannot read the code from standard input: {error}"
                )))
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err(ApiError::invalid(
            "code",
            "no code on standard input (give the code on its first line)",
        ));
    }
    if line.len() > MAX_CODE_LINE {
        return Err(too_long());
    }
    to_code(&line)
}

fn too_long() -> ApiError {
    ApiError::invalid(
        "code",
        format!("the code's line is longer than {MAX_CODE_LINE} bytes"),
    )
}

/// The bytes as a code; any that are not text cannot be digits either.
fn to_code(bytes: &[u8]) -> Result<SecretString, ApiError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(SecretString::from(text)),
        Err(_) => Err(ApiError::invalid("code", "code must contain digits only")),
    }
}

/// `read(2)` on a file descriptor, unbuffered.
struct FdReader<'a>(BorrowedFd<'a>);

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        nix::unistd::read(self.0, buf).map_err(std::io::Error::from)
    }
}

/// The editing keys of the terminal, read from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    pub erase: u8,
    pub kill: u8,
    pub interrupt: u8,
    pub eof: u8,
}

impl Keys {
    /// The usual keys: DEL, ^U, ^C, ^D.
    pub const DEFAULT: Keys = Keys {
        erase: 0x7f,
        kill: 0x15,
        interrupt: 0x03,
        eof: 0x04,
    };

    fn of(settings: &Termios) -> Keys {
        let key = |index: SpecialCharacterIndices, default: u8| match settings.control_chars
            [index as usize]
        {
            0 => default,
            key => key,
        };
        Keys {
            erase: key(SpecialCharacterIndices::VERASE, Self::DEFAULT.erase),
            kill: key(SpecialCharacterIndices::VKILL, Self::DEFAULT.kill),
            interrupt: key(SpecialCharacterIndices::VINTR, Self::DEFAULT.interrupt),
            eof: key(SpecialCharacterIndices::VEOF, Self::DEFAULT.eof),
        }
    }
}

/// What was typed at the prompt.
#[derive(Debug)]
pub enum Typed {
    Code(SecretString),
    /// The interrupt key (^C).
    Interrupted,
}

/// Reads keys typed on a terminal that neither echoes nor edits (non-canonical, no signals)
/// up to Enter: the erase key takes back one byte, the kill key the whole line, the interrupt
/// key cancels, the end-of-file key on an empty line (or the end of input) ends it; other
/// control characters are ignored. Refuses an empty line and more than [`MAX_CODE_LINE`]
/// bytes.
pub fn read_typed(input: &mut impl Read, keys: Keys) -> Result<Typed, ApiError> {
    let mut line: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(MAX_CODE_LINE));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match input.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) => match byte[0] {
                b'\n' | b'\r' => break,
                key if key == keys.interrupt => return Ok(Typed::Interrupted),
                key if key == keys.erase || key == 0x08 || key == 0x7f => {
                    line.pop();
                }
                key if key == keys.kill => line.clear(),
                key if key == keys.eof && line.is_empty() => break,
                key if key.is_ascii_control() => {}
                _ if line.len() >= MAX_CODE_LINE => return Err(too_long()),
                key => line.push(key),
            },
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(ApiError::internal(format!(
                    "cannot read the code from the terminal: {error}"
                )))
            }
        }
    }
    if line.is_empty() {
        return Err(ApiError::invalid("code", "no code was typed"));
    }
    to_code(&line).map(Typed::Code)
}

/// Prompts as getpass(3) does: on the controlling terminal (/dev/tty), or when there is none
/// on standard input with the prompt on standard error; echo off while the code is typed.
fn prompt_on_terminal() -> Result<SecretString, ApiError> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open("/dev/tty");
    let typed = match &tty {
        Ok(tty) => prompt_without_echo(tty.as_fd(), &mut &*tty),
        Err(_) => prompt_without_echo(std::io::stdin().as_fd(), &mut std::io::stderr()),
    }?;
    match typed {
        Typed::Code(code) => Ok(code),
        Typed::Interrupted => {
            // Cancelled like any interrupted program, now that the terminal is restored
            // (when SIGINT is ignored, this goes on as a refusal).
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
            Err(ApiError::invalid("code", "cancelled: no code was typed"))
        }
    }
}

/// Shows the prompt on `output` and reads the code from the terminal `input` with echo,
/// line editing and signal keys off; the terminal's settings are restored (and anything
/// typed but not read is discarded) however that ends.
fn prompt_without_echo(input: BorrowedFd<'_>, output: &mut impl Write) -> Result<Typed, ApiError> {
    let terminal_error =
        |error: nix::Error| ApiError::internal(format!("cannot prompt on the terminal: {error}"));
    let saved = termios::tcgetattr(input).map_err(terminal_error)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(
        LocalFlags::ECHO
            | LocalFlags::ECHOE
            | LocalFlags::ECHOK
            | LocalFlags::ECHONL
            | LocalFlags::ICANON
            | LocalFlags::ISIG
            | LocalFlags::IEXTEN,
    );
    quiet.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    quiet.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    termios::tcsetattr(input, SetArg::TCSAFLUSH, &quiet).map_err(terminal_error)?;
    let restore = Restore {
        fd: input,
        saved: &saved,
    };
    let shown = output
        .write_all(PROMPT.as_bytes())
        .and_then(|()| output.flush());
    let typed = match shown {
        Ok(()) => read_typed(&mut FdReader(input), Keys::of(&saved)),
        Err(error) => Err(ApiError::internal(format!(
            "cannot show the prompt on the terminal: {error}"
        ))),
    };
    // Enter was not echoed: end the prompt's line.
    let _ = output.write_all(b"\n").and_then(|()| output.flush());
    drop(restore);
    typed
}

/// Puts the terminal's settings back when dropped.
struct Restore<'a> {
    fd: BorrowedFd<'a>,
    saved: &'a Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSAFLUSH, self.saved);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use pam_totp_proto::ErrorCode;

    fn line(input: &[u8]) -> Result<String, ApiError> {
        read_code_line(&mut &input[..]).map(|code| code.expose().to_owned())
    }

    fn refused(input: &[u8]) -> ApiError {
        let error = line(input).expect_err("should be refused");
        assert_eq!(error.code, ErrorCode::InvalidArgument, "{input:?}");
        assert_eq!(error.code.exit_code(), 2);
        assert_eq!(error.target.as_deref(), Some("code"), "{input:?}");
        error
    }

    #[test]
    fn a_line_with_or_without_its_end() {
        assert_eq!(line(b"123456\n").unwrap(), "123456");
        assert_eq!(line(b"123456\r\n").unwrap(), "123456");
        assert_eq!(line(b"123456").unwrap(), "123456");
        assert_eq!(line(b"12345678\nmore\nlines\n").unwrap(), "12345678");
        // Only the line end is taken off: the rest is validated as given.
        assert_eq!(line(b" 123456\n").unwrap(), " 123456");
        assert_eq!(line(b"123456\r\r\n").unwrap(), "123456\r");
    }

    #[test]
    fn nothing_to_read_is_no_code() {
        for input in [&b""[..], b"\n", b"\r\n", b"\r"] {
            let error = refused(input);
            assert!(error.message.contains("no code"), "{}", error.message);
        }
    }

    #[test]
    fn over_long_lines_are_refused_without_reading_on() {
        let longest = "7".repeat(MAX_CODE_LINE);
        assert_eq!(line(format!("{longest}\n").as_bytes()).unwrap(), longest);
        assert_eq!(line(format!("{longest}\r\n").as_bytes()).unwrap(), longest);
        assert_eq!(line(longest.as_bytes()).unwrap(), longest);
        for input in [
            format!("{longest}7"),
            format!("{longest}7\n"),
            format!("{longest}77\r\n"),
        ] {
            let error = refused(input.as_bytes());
            assert!(
                error.message.contains("longer than 256"),
                "{}",
                error.message
            );
            assert!(!error.message.contains("777"), "{}", error.message);
        }
        // A line without end is not read past the limit.
        let mut endless = std::io::repeat(b'9');
        let error = read_code_line(&mut (&mut endless).take(1 << 20)).unwrap_err();
        assert_eq!(error.target.as_deref(), Some("code"));
        let mut nines = std::io::repeat(b'9');
        let mut counted = (&mut nines).take(10_000);
        read_code_line(&mut counted).unwrap_err();
        assert!(counted.limit() >= 10_000 - (MAX_CODE_LINE as u64 + 2));
    }

    #[test]
    fn nothing_past_the_line_is_consumed() {
        let mut input: &[u8] = b"123456\nrest";
        assert_eq!(read_code_line(&mut input).unwrap().expose(), "123456");
        assert_eq!(input, b"rest");
    }

    #[test]
    fn bytes_that_are_not_text_are_not_a_code_and_not_repeated() {
        let error = refused(b"12\xff456\n");
        assert_eq!(error.message, "code must contain digits only");
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct Flaky(Vec<u8>, bool);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                if self.0.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0.remove(0);
                Ok(1)
            }
        }
        let code = read_code_line(&mut Flaky(b"654321\n".to_vec(), false)).unwrap();
        assert_eq!(code.expose(), "654321");
        let typed = read_typed(&mut Flaky(b"654321\r".to_vec(), false), Keys::DEFAULT).unwrap();
        assert!(matches!(typed, Typed::Code(code) if code.expose() == "654321"));
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::PermissionDenied.into())
            }
        }
        assert_eq!(
            read_code_line(&mut Broken).unwrap_err().code,
            ErrorCode::Internal
        );
    }

    fn typed(input: &[u8]) -> Result<Typed, ApiError> {
        read_typed(&mut &input[..], Keys::DEFAULT)
    }

    fn typed_code(input: &[u8]) -> String {
        match typed(input).unwrap() {
            Typed::Code(code) => code.expose().to_owned(),
            Typed::Interrupted => panic!("interrupted: {input:?}"),
        }
    }

    #[test]
    fn typing_at_the_prompt() {
        assert_eq!(typed_code(b"123456\r"), "123456");
        assert_eq!(typed_code(b"123456\n"), "123456");
        // Erase (DEL or backspace), kill (^U), arrow keys' control bytes ignored.
        assert_eq!(typed_code(b"1234567\x7f\r"), "123456");
        assert_eq!(typed_code(b"1234567\x08\r"), "123456");
        assert_eq!(typed_code(b"999\x15123456\r"), "123456");
        assert_eq!(typed_code(b"\x7f\x7f123456\r"), "123456");
        assert_eq!(typed_code(b"123\x1b456\r"), "123456");
        // The end of input ends the line too.
        assert_eq!(typed_code(b"123456"), "123456");
        assert!(matches!(typed(b"12\x03").unwrap(), Typed::Interrupted));
        for empty in [&b"\r"[..], b"", b"\x04", b"12\x15\r"] {
            let error = typed(empty).unwrap_err();
            assert_eq!(error.target.as_deref(), Some("code"));
            assert_eq!(error.code, ErrorCode::InvalidArgument);
        }
        // ^D after something typed is ignored.
        assert_eq!(typed_code(b"12\x043456\r"), "123456");
        let long = vec![b'1'; MAX_CODE_LINE + 1];
        let error = typed(&long).unwrap_err();
        assert!(error.message.contains("longer than"), "{}", error.message);
        // Other keys from the terminal's settings.
        let keys = Keys {
            erase: b'#',
            kill: b'@',
            interrupt: 0x07,
            eof: 0x1a,
        };
        let code = read_typed(&mut &b"9@12345#6\r"[..], keys).unwrap();
        assert!(matches!(code, Typed::Code(code) if code.expose() == "12346"));
        assert!(matches!(
            read_typed(&mut &b"1\x07"[..], keys).unwrap(),
            Typed::Interrupted
        ));
    }
}
