from django.db import migrations


def create_default(apps, schema_editor):
    SimilarityCriterion = apps.get_model("ranking", "SimilarityCriterion")
    if not SimilarityCriterion.objects.exists():
        SimilarityCriterion.objects.create(name="Similarity", question="Which image is more similar to the query?")


class Migration(migrations.Migration):
    dependencies = [("ranking", "0001_initial")]
    operations = [migrations.RunPython(create_default, migrations.RunPython.noop)]
