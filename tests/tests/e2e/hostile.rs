//! Hostile input: malformed and oversized bodies, invalid UTF-8, traversal and shell metacharacters everywhere.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use x2gobroker_e2e::{golden_dir, start_broker};

const CONFIG: &str = "[global]\nrequire-password = true\ndefault-auth-mech = testsuite\nlogin-throttling = false\ndefault-portscan-x2goservers = false\nenable-uccs-output = true\n[broker_zeroconf]\nenable = true\nauth-mech = none\n";

fn raw_request(port: u16, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buffer[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn files_below(directory: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap().flatten() {
        names.push(entry.file_name().to_string_lossy().into_owned());
        if entry.path().is_dir() {
            for inner in files_below(&entry.path()) {
                names.push(format!("{}/{inner}", entry.file_name().to_string_lossy()));
            }
        }
    }
    names.sort();
    names
}

#[test]
fn hostile_requests_are_answered_and_change_nothing() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("x2gobroker.conf");
    std::fs::write(&config, CONFIG).unwrap();
    let profiles = golden_dir().join("configs/profiles_basic.ini");
    let cookies = work.path().join("cookies");
    std::fs::create_dir(&cookies).unwrap();
    let before = files_below(work.path());
    let mut daemon = start_broker(&config, &profiles, work.path(), &cookies, &[]);
    let port = daemon.address.port();

    let payloads = [
        "../../../../tmp/x2go-pwned",
        "$(touch /tmp/x2go-pwned)",
        "`touch /tmp/x2go-pwned`",
        "a;touch /tmp/x2go-pwned;b",
        "x|y&z>w<v",
        "line\nbreak\r\n",
        "%00nul",
        "'\"quotes\"'",
        "ümlaut-ß-€-𝄞",
    ];
    let parameters = [
        "user",
        "password",
        "login",
        "authid",
        "task",
        "sid",
        "profile-id",
        "pubkey",
    ];
    let mut answered = 0;
    let mut sent = 0;
    for payload in payloads {
        for parameter in parameters {
            for path in ["/plain/inifile/", "/json/inifile/", "/plain/zeroconf/"] {
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("user", "test")
                    .append_pair("password", "sweet")
                    .append_pair("task", "selectsession")
                    .append_pair("sid", "a-single")
                    .append_pair(parameter, payload)
                    .finish();
                let request = format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                sent += 1;
                if let Some(status) = raw_request(port, request.as_bytes()) {
                    assert!(
                        [200, 400, 401, 404].contains(&status),
                        "{parameter}={payload:?} on {path}: {status}"
                    );
                    answered += 1;
                }
            }
        }
    }
    let mut specials: Vec<(Vec<u8>, Vec<u16>)> = vec![
        // invalid UTF-8 in a parameter
        (b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\nConnection: close\r\n\r\nuser=%ff%fe%fd".to_vec(), vec![400]),
        // oversized body
        (format!("POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 2 * 1024 * 1024).into_bytes(), vec![413]),
        // garbage request line
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(), vec![400]),
        // unknown backends, including the reference's RCE payload (S1)
        (b"POST /plain/zeroconf_broker%3Bimport%20os%3Bos.system(%27touch%20/tmp/x2go-pwned%27)%3Bx%3Dx/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), vec![404]),
        (b"POST /json/..%2F..%2Fetc/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), vec![404]),
        (b"GET /uccs/..%2F/api/5 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dGVzdDpzd2VldA==\r\nConnection: close\r\n\r\n".to_vec(), vec![404]),
        (b"GET /uccs/inifile/api/5 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!notbase64\r\nConnection: close\r\n\r\n".to_vec(), vec![401]),
        // methods
        (b"DELETE /plain/inifile/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), vec![405]),
        (b"PATCH / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), vec![405]),
        (b"POST /pubkeys HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), vec![405]),
        (b"BREW /uccs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), vec![405]),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), vec![404]),
        // a non-form body with junk
        (b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\n&&==&=&=&".to_vec(), vec![401]),
    ];
    // an oversized body that is actually sent (chunked, no Content-Length)
    let mut chunked = b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..1100 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'a'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    specials.push((chunked, vec![413]));
    for (request, expected) in &specials {
        sent += 1;
        let status = raw_request(port, request);
        assert!(
            status.is_some_and(|status| expected.contains(&status)),
            "{:?}: {status:?}, expected {expected:?}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        );
        answered += 1;
    }
    // a slow client that never finishes its headers does not block others
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST /plain/inifile/ HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let status = raw_request(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, Some(200));
    drop(slow);

    assert!(daemon.is_running(), "the daemon survived");
    assert_eq!(answered, sent, "every request was answered");
    assert!(
        !std::path::Path::new("/tmp/x2go-pwned").exists(),
        "no payload ran"
    );
    let after: Vec<String> = files_below(work.path())
        .into_iter()
        .filter(|name| !name.starts_with("cookies/"))
        .collect();
    assert_eq!(
        before, after,
        "no file was created outside the cookie directory"
    );
    for name in std::fs::read_dir(&cookies).unwrap().flatten() {
        assert!(name.path().is_file());
    }
    println!("hostile input: {answered} of {sent} requests answered; daemon still serving");
}
