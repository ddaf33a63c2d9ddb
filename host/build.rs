fn main() {
    // Release binaries carry the templates inside them so `fasten` runs from any folder;
    // `serve --dev` reads them from disk instead (see web::render).
    minijinja_embed::embed_templates!("../templates", &[".html"][..]);
}
