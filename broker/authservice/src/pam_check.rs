//! One PAM conversation with a user name and password: `pam_authenticate`, then `pam_acct_mgmt`
//! (the `pam` crate's `Client::authenticate` runs both), so locked or expired accounts fail.
//!
//! The conversation is ours ([`ZeroizingConversation`]) so that the password it holds is zeroed
//! when the conversation ends (the crate's `PasswordConv` keeps a plain `String`). The C string
//! handed to PAM for each prompt is copied by the crate (`strdup`) and freed by PAM; that copy
//! and PAM's own are outside our reach.

use std::ffi::{CStr, CString};
use zeroize::Zeroizing;

/// Answers PAM's prompts with the user name and the password; zeroes the password on drop.
pub struct ZeroizingConversation {
    login: String,
    password: Zeroizing<String>,
}

impl pam::Conversation for ZeroizingConversation {
    fn prompt_echo(&mut self, _message: &CStr) -> Result<CString, ()> {
        CString::new(self.login.as_bytes()).map_err(|_| ())
    }

    fn prompt_blind(&mut self, _message: &CStr) -> Result<CString, ()> {
        CString::new(self.password.as_bytes()).map_err(|_| ())
    }

    fn info(&mut self, _message: &CStr) {}

    fn error(&mut self, message: &CStr) {
        tracing::info!(message = ?message.to_string_lossy(), "PAM error message");
    }
}

/// Whether PAM service `service` accepts `user`/`password` (authentication and account checks).
/// Blocking (PAM's failure delay): call it on a blocking thread, one per check (`pam::Client` is
/// `!Send`). The caller validates `service`; NUL bytes cannot cross into PAM's C strings, so
/// they are refused here.
pub fn check(user: &str, password: &str, service: &str) -> bool {
    if user.contains('\0') || password.contains('\0') || service.contains('\0') {
        return false;
    }
    let conversation = ZeroizingConversation {
        login: user.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    };
    let mut client = match pam::Client::with_conversation(service, conversation) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(service, %error, "cannot start a PAM conversation");
            return false;
        }
    };
    match client.authenticate() {
        Ok(()) => true,
        Err(error) => {
            // `error` is PAM's status text (e.g. "Authentication failure"), never the password.
            tracing::info!(user = ?user, service, %error, "PAM refused");
            false
        }
    }
}
