// An enhancement only: every form works without it. A form being sent shows
// that it is busy and cannot be sent twice by a second click.
document.addEventListener("submit", function (e) {
  var form = e.target;
  if (form.dataset.sent) { e.preventDefault(); return; }
  form.dataset.sent = "1";
  form.classList.add("busy");
  form.setAttribute("aria-busy", "true");
});
// Coming back to a page from the browser's cache, its forms can be sent again.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form[data-sent]").forEach(function (form) {
    delete form.dataset.sent;
    form.classList.remove("busy");
    form.removeAttribute("aria-busy");
  });
});
