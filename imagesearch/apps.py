from django.apps import AppConfig


class ImageSearchConfig(AppConfig):
    name = "imagesearch"
    verbose_name = "Image library"
