//! The smallest libpam driver: pam_start, pam_authenticate, pam_end, and a conversation that
//! answers every prompt with the current code of the account logging in.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// What the conversation needs: the account's secret (the code is computed when asked, so a
/// slow module still gets a current code).
pub struct Answer {
    pub secret: Vec<u8>,
    /// Prompts seen, for diagnostics.
    pub prompts: u32,
}

unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    let Ok(count) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if count == 0 || msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata_ptr is the `Answer` that `login` passed to pam_start; it outlives the
    // PAM handle and only this thread uses it.
    let answer = unsafe { &mut *appdata_ptr.cast::<Answer>() };
    // SAFETY: libpam frees the array and each `resp` with free(), so they come from calloc
    // and strdup; calloc zeroes every slot (null responses for non-prompts).
    let replies =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes `msg` as an array of `num_msg` message pointers.
        let message = unsafe { *msg.add(i) };
        if message.is_null() {
            continue;
        }
        // SAFETY: each non-null pointer points at a valid pam_message for this call.
        let style = unsafe { (*message).msg_style };
        if style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON {
            answer.prompts += 1;
            let code = crate::seed::code(&answer.secret, crate::seed::current_step());
            let Ok(text) = CString::new(code.as_str()) else {
                return PAM_CONV_ERR;
            };
            // SAFETY: `text` is a valid C string; strdup copies it into malloc'ed memory,
            // and `replies` has `count` slots, of which this is number `i`.
            unsafe { (*replies.add(i)).resp = libc::strdup(text.as_ptr()) };
        }
    }
    // SAFETY: `resp` is the caller's out pointer (checked non-null above).
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// One login of `user` on `service`: pam_start, pam_authenticate, pam_end. Returns the PAM
/// result of pam_authenticate, or the failure of pam_start, as text on error.
pub fn login(service: &CStr, user: &CStr, secret: &[u8]) -> Result<(), String> {
    let mut answer = Answer {
        secret: secret.to_vec(),
        prompts: 0,
    };
    let conv = PamConv {
        conv: Some(conversation),
        appdata_ptr: ptr::addr_of_mut!(answer).cast::<c_void>(),
    };
    let mut handle: *mut PamHandle = ptr::null_mut();
    // SAFETY: all pointers are valid for the call; libpam copies the conversation struct and
    // the strings, and `answer` outlives the handle (ended below).
    let started = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut handle) };
    if started != PAM_SUCCESS || handle.is_null() {
        return Err(format!("pam_start failed ({started})"));
    }
    // SAFETY: `handle` is the live handle pam_start returned.
    let status = unsafe { pam_authenticate(handle, 0) };
    let message = if status == PAM_SUCCESS {
        None
    } else {
        // SAFETY: pam_strerror returns a static string for any status.
        let text = unsafe { pam_strerror(handle, status) };
        Some(if text.is_null() {
            format!("PAM status {status}")
        } else {
            // SAFETY: non-null pam_strerror results are NUL-terminated static strings.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        })
    };
    // SAFETY: ends the handle once; it is not used afterwards.
    unsafe { pam_end(handle, status) };
    match message {
        None => Ok(()),
        Some(text) => Err(format!("{text} after {} prompt(s)", answer.prompts)),
    }
}

/// Modules held loaded by the driver, so libpam's own dlopen at each pam_start only bumps a
/// reference count: the loop then measures each module's per-login work, not a load and
/// unload of its shared object per login. Unloaded when dropped.
pub struct Pinned {
    handles: Vec<*mut c_void>,
}

fn dlerror_text() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl call.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        "unknown dlopen error".into()
    } else {
        // SAFETY: non-null dlerror results are NUL-terminated strings.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

fn open(path: &std::path::Path) -> Result<*mut c_void, String> {
    let name = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid C string; RTLD_NOW resolves everything now, as libpam does.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        Err(format!("dlopen {}: {}", path.display(), dlerror_text()))
    } else {
        Ok(handle)
    }
}

impl Pinned {
    pub fn new(paths: &[std::path::PathBuf]) -> Result<Self, String> {
        let mut pinned = Self {
            handles: Vec::new(),
        };
        for path in paths {
            pinned.handles.push(open(path)?);
        }
        Ok(pinned)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for &handle in &self.handles {
            // SAFETY: each handle came from a successful dlopen and is closed once.
            unsafe { libc::dlclose(handle) };
        }
    }
}

/// Time of one dlopen + dlclose of `path` while nothing else holds it: what a process that
/// logs in once (an sshd session, a sudo run) pays to load the module.
pub fn load_time(path: &std::path::Path, rounds: usize) -> Result<Vec<u64>, String> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        let handle = open(path)?;
        // SAFETY: `handle` came from the successful dlopen just above.
        unsafe { libc::dlclose(handle) };
        samples.push(crate::stats::nanos(start.elapsed()));
    }
    Ok(samples)
}
