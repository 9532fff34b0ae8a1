//! One PAM conversation with a user name and password: `pam_authenticate`, then `pam_acct_mgmt`
//! (the `pam` crate's `Client::authenticate` runs both), so locked or expired accounts fail.

/// Whether PAM service `service` accepts `user`/`password` (authentication and account checks).
/// Blocking (PAM's failure delay): call it on a blocking thread, one per check (`pam::Client` is
/// `!Send`). The caller validates `service`; NUL bytes cannot cross into PAM's C strings, so
/// they are refused here.
pub fn check(user: &str, password: &str, service: &str) -> bool {
    if user.contains('\0') || password.contains('\0') || service.contains('\0') {
        return false;
    }
    let mut client = match pam::Client::with_password(service) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(service, %error, "cannot start a PAM conversation");
            return false;
        }
    };
    client.conversation_mut().set_credentials(user, password);
    match client.authenticate() {
        Ok(()) => true,
        Err(error) => {
            // `error` is PAM's status text (e.g. "Authentication failure"), never the password.
            tracing::info!(user = ?user, service, %error, "PAM refused");
            false
        }
    }
}
