// Submits the form_post response at once; without scripts the citizen presses the button.
document.getElementById("form-post").submit();
