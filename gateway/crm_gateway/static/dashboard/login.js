// Sign in: POST /dashboard/login as JSON; the answer sets the HttpOnly session cookie, then on to the dashboard.
const form = document.getElementById("signin");
const error = document.getElementById("signin-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const body = {
    username: document.getElementById("username").value,
    password: document.getElementById("password").value,
  };
  const response = await fetch("/dashboard/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.ok) {
    window.location.assign("/dashboard");
    return;
  }
  const answer = await response.json().catch(() => ({}));
  error.textContent = answer.error?.message ?? `sign-in failed (${response.status})`;
  error.hidden = false;
});
